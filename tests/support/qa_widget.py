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


FOCUSED_NAME = """() => {
  let node = document.activeElement;
  while (node && node.shadowRoot && node.shadowRoot.activeElement) {
    node = node.shadowRoot.activeElement;
  }
  if (!node) return null;
  if (node.getAttribute("aria-label")) return node.getAttribute("aria-label");
  if (node.id && node.getRootNode().querySelector) {
    const label = node.getRootNode().querySelector(`label[for="${node.id}"]`);
    if (label) return label.textContent.trim();
  }
  return node.textContent.trim();
}"""


def focused_name(page) -> str | None:
    """The accessible name (aria-label, label or text) of the focused element, shadow DOM too."""
    return page.evaluate(FOCUSED_NAME)


def tab_to(page, name: str, *, limit: int = 30) -> None:
    """Press Tab until the element named `name` has the focus (fails after `limit` presses)."""
    for _ in range(limit):
        if focused_name(page) == name:
            return
        page.keyboard.press("Tab")
    if focused_name(page) != name:
        raise AssertionError(f"Tab never reached {name!r} in {limit} presses")
