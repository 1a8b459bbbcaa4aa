"""`mt-photos-triton bench <family>`: us and the in-process reference side by side, with the ratio."""
