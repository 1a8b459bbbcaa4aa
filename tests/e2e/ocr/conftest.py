from tests.ocr_support import ocr_triton  # noqa: F401 - the fixture, for this folder's tests
