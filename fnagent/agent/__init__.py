"""The agent: calls become container tasks on hot http-stream containers.

One module per concept:

- ``agent``: the ``Agent`` class, which ties the others together and does the I/O;
- ``protocol``: Fn's http-stream contract (container environment, request and response
  headers, the status table's errors), shared with the one-off run;
- ``slots``: hot containers and the per-version queues that hold them (bookkeeping);
- ``versions``: version routing (which queue a fn's calls go to; prepare, switch, drain,
  settle, forget), bookkeeping that returns what the agent is to do;
- ``launch``: the launch policy (patience, how many to launch, the minimum hot count);
- ``admission``: the memory and CPU budget launches reserve from; ``eviction`` beside it:
  which idle container makes room (Greedy-Dual priority by default; a policy one can swap);
- the keep-alive policy itself is ``fnagent.keepalive`` (pure); the ``Agent`` carries its plans
  out (idle removal, pre-warm) and reports them (``KeepAliveView``, ``PrewarmView``);
- ``sockdir``, ``readiness``, ``httpclient``: one container's socket dir, its listener, the
  client that calls it; ``calllogs``: its output, cut into its calls; ``follow``: the hub that
  hands every line to the fn's live followers; ``hostcpu``: the host's idle CPU share;
- ``oneoff``: ``fnagent run``, one container and one call.
"""

from fnagent.agent.agent import Agent, CallResult, KeepAliveView, PrewarmView

__all__ = ["Agent", "CallResult", "KeepAliveView", "PrewarmView"]
