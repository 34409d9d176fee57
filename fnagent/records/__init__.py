"""Every call on record: the record of a call (``record``), the write-behind recorder that
puts records and logs into the store (``recorder``), and their retention (``retention``)."""

from fnagent.records.record import call_status, finished_record, pending_record, start_kind
from fnagent.records.recorder import Recorder
from fnagent.records.retention import Retention, prune_forever, prune_once

__all__ = [
    "Recorder",
    "Retention",
    "call_status",
    "finished_record",
    "pending_record",
    "prune_forever",
    "prune_once",
    "start_kind",
]
