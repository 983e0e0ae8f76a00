"""lmms-eval task definitions of our own benchmarks (``timewarp_normal``,
``timewarp_shuffled``): the folder :func:`~timewarp.evaluation.lmms.tasks.run_benchmarks`
hands lmms-eval's ``TaskManager`` as its ``include_path``.

An export folder (``timewarp_<variant>_benchmark.json`` and ``<variant>_videos/``) is given
at run time: ``run_benchmarks`` sets each task's ``dataset_kwargs.data_files`` and
``doc_to_visual`` (:func:`~timewarp.evaluation.lmms.task_configs.utils.export_task_override`).
"""

from pathlib import Path

#: The folder lmms-eval indexes for our tasks.
TASKS_DIR = Path(__file__).parent
