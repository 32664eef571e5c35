"""The live dashboard: a Textual app over the engine, the scheduler and the history store.

`app.py` builds the app (a factory tests reuse), `screens/` holds one screen per module, `widgets/` the
pieces they share, `messages.py` the typed messages that carry results from worker threads to the UI.
"""
