"""Clusters made of CML applications: project-directory layout, records, lifecycle, views."""
