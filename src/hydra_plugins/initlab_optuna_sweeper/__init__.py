"""initlab's Hydra sweeper on current Optuna: ``override /hydra/sweeper: initlab_optuna``.

It keeps the configuration keys and sweep syntax of Hydra's official ``hydra-optuna-sweeper``
(which pins optuna<3) and adds persistent, resumable studies, pruning inside the job, failure
handling and asynchronous parallel trials.  See README.md, "Searching init family × scale with Optuna".
"""
