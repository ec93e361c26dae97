"""Small widgets built on Textual's own; none of them talks to an API."""
