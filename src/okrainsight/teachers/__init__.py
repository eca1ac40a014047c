"""Teachers: models that turn prompts into masks (see :mod:`okrainsight.teachers.base`).

Importing this package registers the built-in teachers: ``sam`` (segment-anything,
imported lazily), ``grabcut`` (OpenCV, no weights) and ``student`` (a trained okra
model on ONNX Runtime, when :mod:`okrainsight.runtime` is present).
"""

from okrainsight.teachers import grabcut as _grabcut  # noqa: F401,E402  (registers "grabcut")
from okrainsight.teachers import sam as _sam  # noqa: F401,E402  (registers "sam")
from okrainsight.teachers import student as _student  # noqa: F401,E402  (registers "student")
from okrainsight.teachers.base import (
    Teacher,
    TeacherResult,
    create_teacher,
    list_teachers,
    mask_iou,
    register_teacher,
)

__all__ = ["Teacher", "TeacherResult", "create_teacher", "list_teachers", "mask_iou", "register_teacher"]
