"""The Triton python-model glue every model.py uses, so that each reads like python_backend's add_sub example.

- `parameters`: the model's config from `initialize`'s args; a missing parameter names the export command.
- `answers`: one answer per request of an execute, in order, each failing alone; the one error policy.
- `bls`: the check of a BLS call's response; `rows`: row packing (equal shapes together, N rows a call).
- `python_backend`: what needs `triton_python_backend_utils` (inputs, responses, the BLS call, sync and
  async); only the python models import it, so the modules above are tested without a Triton stub.
"""
