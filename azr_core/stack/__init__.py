"""The local stack a run is served by: `settings` (state folder, ports, work pool, environment; plain data),
`local` (`azr up`/`status`/`down`: a Prefect server, a process work pool and its worker, an MLflow UI), `join`
(`azr join`/`leave`: a worker on another host), `processes` (detached processes with pid records, stopped as whole
trees) and `crash_automation` (the Prefect automation that marks a silent flow run Crashed)."""
