"""Function output to an app's syslog (the app's ``syslog_url``).

- ``message``: pure rules, no I/O: which syslog URLs an app may have (the store validates with
  them), the RFC 5424 message of one log line, and its framing on the wire;
- ``forwarder``: the sink the agent hands each line to; one task per destination sends what
  is buffered, reconnecting with backoff, and drops (and counts) what does not fit.

Nothing is re-exported here: the store imports ``message`` without loading the forwarder.
"""
