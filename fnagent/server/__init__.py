"""`fnagent serve`: Fn's v2 HTTP API on Starlette and uvicorn."""
