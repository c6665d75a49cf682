"""The ``ray`` backend of :mod:`heed.agents.sweep`: Ray Tune schedules the same trials.

Each Tune trial calls :func:`heed.agents.sweep.run_trial`, so skipping, resuming and retrying follow
the same rules as the local backend, and a trial runs the same command (same seed, same metrics).
Without ``address`` Ray starts a local instance; with one (``auto`` or ``ray://host:10001``) the
trials go to that cluster, whose workers must see the sweep folder at the same path (a shared file
system) and have heed installed. Install with ``pip install "heed-attention[ray]"``.
"""

from __future__ import annotations

from typing import Any

from heed.agents.common.errors import HeedError
from heed.agents.sweep import Progress, Trial, default_jobs, is_done, run_trial, trial_record


def run_ray(
    trials: list[Trial], jobs: int = 0, retries: int = 1, address: str | None = None, stream=None
) -> list[dict[str, Any]]:
    """Run the unfinished trials through Ray Tune, one CPU each, at most ``jobs`` at once (0: Ray decides)."""
    try:
        import ray
        from ray import tune
    except ImportError:
        raise HeedError("the ray backend needs Ray: pip install \"heed-attention[ray]\"") from None
    todo = {t.name: t for t in trials if not is_done(t)}
    progress = Progress(len(trials), len(trials) - len(todo), jobs or default_jobs(), stream)
    progress.show()
    if todo:

        def trainable(config: dict[str, Any]) -> dict[str, Any]:
            record = run_trial(todo[config["trial"]], retries)
            if record["status"] != "done":
                raise RuntimeError(f"trial {config['trial']} {record['status']} (see logs/{config['trial']}.log)")
            return {"attempts": record["attempts"], "seconds": record["seconds"]}

        class Report(tune.Callback):
            def on_trial_start(self, iteration, trials, trial, **info) -> None:
                progress.started()

            def on_trial_complete(self, iteration, trials, trial, **info) -> None:
                progress.finished({"status": "done"}, float(trial.last_result.get("seconds", 0.0)))

            def on_trial_error(self, iteration, trials, trial, **info) -> None:
                progress.finished({"status": "failed"}, 0.0)

        storage = next(iter(todo.values())).dir.parent.resolve() / "ray"
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        try:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                param_space={"trial": tune.grid_search(sorted(todo))},
                tune_config=tune.TuneConfig(max_concurrent_trials=jobs or None),
                run_config=tune.RunConfig(storage_path=str(storage), name="tune", verbose=0, callbacks=[Report()],
                                          failure_config=tune.FailureConfig(max_failures=0)),
            )
            tuner.fit()
        finally:
            ray.shutdown()
    return [trial_record(t) for t in trials]
