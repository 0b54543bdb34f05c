"""The run use case: what `moecluster submit` does, without the command line.

- `plan`: what a submit will run (a new run of a sweep file, or the rest of a run), refused in
  one line when it cannot be;
- `execute`: reach Ray, create the run directory, record the environment, start the node agents,
  run the scheduler (retries, watchdog, storing every result), record how it ended; SIGTERM is
  treated like Ctrl-C; a run the disk stops is `RunStopped`, its results kept;
- `state`: a run's state as its store records it.
"""
from moecluster.head.run.execute import RunInterrupted, RunOptions, RunOutcome, RunStopped, RunView, execute
from moecluster.head.run.plan import RunPlan, RunRefused, missing_pairs, plan_new, plan_resume
from moecluster.head.run.state import run_state

__all__ = ["RunInterrupted", "RunOptions", "RunOutcome", "RunPlan", "RunRefused", "RunStopped", "RunView",
           "execute", "missing_pairs", "plan_new", "plan_resume", "run_state"]
