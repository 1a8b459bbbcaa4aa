"""What every family's export returns or raises."""

from __future__ import annotations

from dataclasses import dataclass, field


class ExportError(RuntimeError):
    """An export that cannot be done; the message tells the user what to do."""


@dataclass
class ExportResult:
    family: str
    model: str
    written: list[str] = field(default_factory=list)  # Triton model names written
    skipped: bool = False  # everything already there (idempotent run without --force)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        state = "up to date" if self.skipped else f"wrote {', '.join(self.written) or 'nothing'}"
        extra = "".join(f"\n    note: {n}" for n in self.notes)
        return f"{self.family}: {self.model}: {state}{extra}"
