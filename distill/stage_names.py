"""The stages by name, with the line ``distill --help`` shows for each: the one table the command line
(``distill.cli``) and the Python API (``distill.api``) both read. A stage NAME is the module
``distill.stages.NAME`` (see :func:`stage_module`) and the config ``conf/NAME.yaml``. Plain data:
importing it costs nothing."""

STAGES = {
    "train": "distil a teacher into a student (trains the teacher first if there is none)",
    "teacher": "train a teacher on the labels",
    "eval": "accuracy, teacher agreement, calibration and speed of a run: distill eval run=RUN_DIR",
    "export": "ONNX export checked in onnxruntime: distill export run=RUN_DIR",
    "report": "compare the runs of a sweep: distill report SWEEP_DIR",
    "chain": "teacher -> assistant -> student (or born-again generations): distill chain chain.models=[A,B,C]",
    "cache": "the teacher output cache: distill cache ls | verify | clear [entry=KEY]",
    "inspect": "list a model's layers and output shapes, for distill.*_layers: distill inspect teacher=NAME",
    "compare": "distillation beside pruning, low rank and int8: distill compare teacher.checkpoint=RUN students=[RUN]",
}

# Stages whose module is not named after them: `inspect` would read as the standard library's module.
_MODULES = {"inspect": "inspect_model"}


def stage_module(stage: str) -> str:
    """The module that runs ``stage``: ``distill.stages.<stage>``, but for the names in ``_MODULES``."""
    return f"distill.stages.{_MODULES.get(stage, stage)}"
