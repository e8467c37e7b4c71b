"""``kubectl exalb doctor``: the usual install mistakes, found on a live cluster.

Each finding has a severity, the evidence it rests on (object names, values, ExaBGP's own
words) and the fix. The layout keeps the judgement pure and testable without a cluster:

* :mod:`~exalbctl.doctor.gather` (the only I/O): reads the API server and every speaker's
  ``/status`` into a :class:`~exalbctl.doctor.snapshot.Snapshot` of plain documents, and
  records what it could not read instead of failing;
* :mod:`~exalbctl.doctor.facts`: what the checks share, derived once from the snapshot
  (the parsed config, our Services, which nodes should run a speaker, which do);
* :mod:`~exalbctl.doctor.checks`: one pure function per concern, plain documents in,
  :class:`~exalbctl.doctor.findings.Finding` values out; a check whose inputs could not be
  read is reported as skipped, never guessed;
* :mod:`~exalbctl.doctor.render` (text) and :mod:`~exalbctl.doctor.command` (wiring).
"""
