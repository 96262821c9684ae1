"""`rnnclf serve`: the prediction service (FastAPI + uvicorn, the optional `serve` extra).

model.py loads a checkpoint with its digest, batcher.py gathers concurrent requests into one
model call on a worker thread, reloader.py swaps in a replaced checkpoint, requests.py checks
request bodies, app.py holds the routes and server.py runs uvicorn.
"""
