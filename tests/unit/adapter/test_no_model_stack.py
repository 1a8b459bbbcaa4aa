"""The adapter needs no model stack: it starts and answers over HTTP in a process where OpenCV, onnxruntime,
onnx, tokenizers and pyclipper cannot be imported (the adapter image installs none of them)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.harness import ROOT

BLOCKED = ("cv2", "onnxruntime", "onnx", "tokenizers", "pyclipper")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, io, json, sys, threading, time, urllib.request

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{{name}} is blocked in this test", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for name in BLOCKED:
        try:
            __import__(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"the blocker does not work for {{name}}")

    import numpy as np
    import uvicorn
    from PIL import Image

    from adapter import Settings, create_app
    from mt_photos_triton.runtime.ports import free_port

    class Backend:
        def start(self): pass
        async def infer(self, model, inputs, outputs):
            return {{"embedding": np.array([[0.5, -0.25]], np.float32)}}
        async def server_ready(self): return True
        async def models(self): return []
        async def model_parameters(self, model): return {{"served_model": "antelopev2"}}
        def health(self): return {{"fake": True}}
        async def close(self): pass

    port = free_port()
    app = create_app(Settings(api_auth_key="k"), backend_factory=lambda settings: Backend())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)

    def call(path, body=b"", headers=None):
        request = urllib.request.Request(f"http://127.0.0.1:{{port}}{{path}}", data=body,
                                         headers={{"api-key": "k", **(headers or {{}})}})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    png = io.BytesIO()
    Image.new("RGB", (16, 12)).save(png, "PNG")
    boundary = "zz"
    upload = (f"--{{boundary}}\\r\\nContent-Disposition: form-data; name=\\"file\\"; filename=\\"a.png\\"\\r\\n"
              f"Content-Type: image/png\\r\\n\\r\\n").encode() + png.getvalue() + f"\\r\\n--{{boundary}}--\\r\\n".encode()
    print(call("/check"))
    print(call("/clip/img", upload, {{"content-type": f"multipart/form-data; boundary={{boundary}}"}}))
    print(json.dumps(sorted(name for name in BLOCKED if name in sys.modules)))
    server.should_exit = True
    """
)


def test_the_adapter_starts_and_answers_without_a_model_stack() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=BLOCKED)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    check, clip, loaded = result.stdout.strip().splitlines()[-3:]
    assert '"result":"pass"' in check and '"recognition_model":"antelopev2"' in check
    assert clip == '{"result":["0.5000000000000000","-0.2500000000000000"]}'
    assert loaded == "[]"
