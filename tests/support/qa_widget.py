"""Helpers of the FAQ chat widget's browser tests: open the widget, ask a question."""

from __future__ import annotations

TITLE = "Juniper & Pine help"


def open_widget(page, base: str | None):
    """Open the widget (on `base`/demo, or on the current page when `base` is None)."""
    if base is not None:
        page.goto(f"{base}/demo")
    page.get_by_role("button", name=f"Open chat: {TITLE}").click()
    dialog = page.get_by_role("dialog", name=TITLE)
    dialog.wait_for(state="visible")
    return dialog


def ask(dialog, text: str) -> None:
    """Type `text` into the open widget and press Enter."""
    box = dialog.get_by_label("Your question")
    box.fill(text)
    box.press("Enter")
