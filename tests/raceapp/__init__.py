"""Handlers for tests that run the receiver in server and worker subprocesses.

A subprocess cannot use pytest fixtures, so its receivers are connected at startup by this
app's ``AppConfig.ready()``; each payload's ``"race"`` object says how the handler behaves.
"""
