"""Ray 2.60's head, as raycai asks it over HTTP: models, errors, parsers, one async client,
and the one rule that matches a Ray node to its CML application. Never imports `ray`."""
