"""Alert-driven retraining: an Alertmanager webhook in, one forge pipeline run out.

``receiver`` side: settings, the alert mapping, the cool-down, the forge triggers and the ASGI
app. ``publish`` side: what the triggered pipeline's last job runs (a new experiment tag on the
commit, the registry's ``staging`` alias moved to it, the reason written where people read it).
"""
