"""The hub: the demo's web pages (`app.create_app`, `pages` blueprint)."""
