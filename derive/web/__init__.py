"""`derive serve`: a web page and a JSON API for checking derivations, deriving gradients and
drawing computation graphs (app.py), with every request's work in a limited worker (pool.py)."""
