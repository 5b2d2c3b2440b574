"""The demo: `threefold demo` runs the three apps together, and the hub page links them."""
