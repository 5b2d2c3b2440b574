"""Browser-test helpers for text direction and reflow: 200 % text, overflow and cut-off text.

`zoom_text(page)` doubles the text of the page as it is now (shadow roots included), as a
browser's text-only zoom does: every element gets twice its computed font size. Apply it once
the page shows what the test checks: elements created later keep their normal size.

`overflow_problems(page)` lists, in words, what a person at this width cannot read: the page
scrolls sideways, a piece of text sticks out of the box (a card, a button, a header bar) that
holds it, or two texts are drawn over each other. Text inside a container made to scroll
sideways is left alone (a wide data table may scroll), and so is text for screen readers only.
"""

from __future__ import annotations

ZOOM_TEXT = """(factor) => {
  const all = [];
  const walk = (root) => {
    for (const node of root.querySelectorAll('*')) {
      all.push(node);
      if (node.shadowRoot) walk(node.shadowRoot);
    }
  };
  walk(document);
  const sizes = all.map((node) => parseFloat(getComputedStyle(node).fontSize));
  all.forEach((node, i) => {
    node.style.setProperty('font-size', sizes[i] * factor + 'px', 'important');
  });
}"""

OVERFLOW_PROBLEMS = """() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    problems.push('the page scrolls sideways: ' + root.scrollWidth + ' px wide in ' +
      root.clientWidth + ' px');
  }
  const parentOf = (node) => node.parentElement || (node.getRootNode().host || null);
  const scrolls = (value) => value === 'auto' || value === 'scroll';
  const isBox = (style) => style.borderLeftStyle !== 'none' || style.borderRightStyle !== 'none' ||
    style.backgroundColor !== 'rgba(0, 0, 0, 0)' || style.overflowX !== 'visible';
  const describe = (node) => {
    const classes = typeof node.className === 'string' ? node.className.trim() : '';
    return node.tagName.toLowerCase() + (node.id ? '#' + node.id : '') +
      (classes ? '.' + classes.split(' ').join('.') : '');
  };
  const quote = (text) => '"' + text.textContent.trim().slice(0, 40) + '"';
  const lines = [];  // per line of text: its box, and the layer it is drawn in
  const visit = (scope) => {
    const walker = document.createTreeWalker(scope, NodeFilter.SHOW_TEXT);
    texts: for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      if (!text.textContent.trim()) continue;
      if (text.parentElement.closest('select, option, script, style')) continue;
      const range = document.createRange();
      range.selectNodeContents(text);
      const rect = range.getBoundingClientRect();
      if (!rect.width || !rect.height) continue;  // not rendered
      let layer = null, sideways = false, problem = null;
      const clips = [];  // what the scroll containers around it show
      for (let box = text.parentElement; box; box = parentOf(box)) {
        const style = getComputedStyle(box);
        if (style.clip === 'rect(0px, 0px, 0px, 0px)') continue texts;  // for screen readers
        if (style.position === 'fixed' && !layer) layer = box;  // floats above the page
        if (style.overflowY !== 'visible' && box !== root && box !== document.body) {
          clips.push(box.getBoundingClientRect());
        }
        if (scrolls(style.overflowX) && !scrolls(style.overflowY)) sideways = true;  // may scroll
        if (sideways || problem || box === root || box === document.body) continue;
        if (style.display !== 'inline' && isBox(style)) {
          const outer = box.getBoundingClientRect();
          if (rect.left < outer.left - 1 || rect.right > outer.right + 1) {
            problem = 'text ' + quote(text) + ' sticks out of ' + describe(box) + ' (' +
              Math.round(rect.left) + '..' + Math.round(rect.right) + ' in ' +
              Math.round(outer.left) + '..' + Math.round(outer.right) + ')';
          }
        }
      }
      if (sideways) continue;
      if (problem) problems.push(problem);
      if (rect.right > root.clientWidth + 1 || rect.left < -1) {
        problems.push('text ' + quote(text) + ' leaves the screen (' + Math.round(rect.left) +
          '..' + Math.round(rect.right) + ')');
      }
      for (const whole of range.getClientRects()) {
        const line = { left: whole.left, right: whole.right, top: whole.top, bottom: whole.bottom };
        for (const clip of clips) {  // only the part not scrolled out of sight
          line.left = Math.max(line.left, clip.left); line.right = Math.min(line.right, clip.right);
          line.top = Math.max(line.top, clip.top); line.bottom = Math.min(line.bottom, clip.bottom);
        }
        line.width = line.right - line.left; line.height = line.bottom - line.top;
        if (line.width > 1 && line.height > 1) lines.push({ text, line, layer });
      }
    }
    for (const node of scope.querySelectorAll('*')) if (node.shadowRoot) visit(node.shadowRoot);
  };
  visit(document.body);
  // two texts drawn over each other (in the same layer: a floating panel may cover the page)
  for (let i = 0; i < lines.length; i++) {
    for (let j = i + 1; j < lines.length; j++) {
      const a = lines[i], b = lines[j];
      if (a.text === b.text || a.layer !== b.layer) continue;
      const across = Math.min(a.line.right, b.line.right) - Math.max(a.line.left, b.line.left);
      const down = Math.min(a.line.bottom, b.line.bottom) - Math.max(a.line.top, b.line.top);
      if (across > 2 && down > 0.3 * Math.min(a.line.height, b.line.height)) {
        problems.push('text ' + quote(a.text) + ' overlaps ' + quote(b.text));
      }
    }
  }
  return [...new Set(problems)];
}"""

DIRECTION = "(node) => getComputedStyle(node).direction"


def zoom_text(page, factor: float = 2) -> None:
    """Make all text on the page `factor` times as large as it is now (200 % text by default)."""
    page.evaluate(ZOOM_TEXT, factor)


def overflow_problems(page) -> list[str]:
    """Sideways scrolling and text sticking out of its box, one readable line each."""
    return list(page.evaluate(OVERFLOW_PROBLEMS))


def direction(locator) -> str:
    """The computed CSS `direction` ("ltr" or "rtl") of the element `locator` points at."""
    return str(locator.evaluate(DIRECTION))
