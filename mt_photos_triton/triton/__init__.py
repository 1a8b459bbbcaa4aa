"""The Triton python-model glue every model.py uses: parameters, the error policy, BLS calls, row packing."""
