"""Ray node launchers: the template and what renders it into a project directory."""
