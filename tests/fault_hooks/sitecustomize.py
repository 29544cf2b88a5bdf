"""Deterministic kill points for tests/test_faults.py, loaded by Python at start-up when this
folder is first on PYTHONPATH and TUNER_FAULT names one (never in normal runs):

    sigterm-at-milestone    SIGTERM to itself at the first evaluation milestone
    exit-after-finish       die (os._exit) right after the first trial's MLflow run is ended,
                            before Optuna hears the result (as a SIGKILL there would)
    wait-at-milestone       at the first milestone, wait until the file TUNER_FAULT_FILE exists
                            (saying so in TUNER_FAULT_FILE.reached and .reached.PID)
"""

import os

FAULT = os.environ.get("TUNER_FAULT", "")

if FAULT:
    import signal
    import time

    import tuner.objective
    import tuner.tracking

    real_train_run = tuner.objective.train_run
    real_finish = tuner.tracking.TrialRun.finish
    fired = []

    def train_run(config, data=None, on_milestone=None, **kwargs):
        def hooked(milestone):
            if FAULT.endswith("-at-milestone") and not fired:
                fired.append(True)
                if FAULT == "sigterm-at-milestone":
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(5)  # the handler raises here
                elif FAULT == "wait-at-milestone":
                    path = os.environ["TUNER_FAULT_FILE"]
                    for reached in (".reached", f".reached.{os.getpid()}"):
                        with open(path + reached, "w"):
                            pass
                    while not os.path.exists(path):
                        time.sleep(0.1)
            return on_milestone(milestone) if on_milestone else None

        return real_train_run(config, data, on_milestone=hooked, **kwargs)

    def finish(self, *args, **kwargs):
        real_finish(self, *args, **kwargs)
        if FAULT == "exit-after-finish" and not fired:
            fired.append(True)
            os._exit(137)

    tuner.objective.train_run = train_run
    tuner.tracking.TrialRun.finish = finish
