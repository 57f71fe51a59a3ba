"""A celery-director-compatible REST API under /director/api/, so that
celery-director's clients (scripts, services, its web UI) keep working when
pointed at Jobsite: its routes, JSON shapes, status names and error answers.

A celery-director "workflow" is a run of a workflow job type that has a
`director_name` (project.NAME; the importer sets it); its "tasks" are the
step runs, and the run of its failure hook. Users sign in with HTTP Basic
and need Jobsite's permissions (roles). What differs from celery-director:
docs/guide.md, "Coming from celery-director".
"""
