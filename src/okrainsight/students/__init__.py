"""Student segmentation networks (one architecture per file) and their registry.

Importing this package registers every built-in student; see :mod:`.registry`.
"""

# Each architecture module registers its builders when imported.
from okrainsight.students import deeplab as _deeplab  # noqa: F401
from okrainsight.students import lraspp as _lraspp  # noqa: F401
from okrainsight.students import okra_lraspp_small as _okra_lraspp_small  # noqa: F401
from okrainsight.students import okra_unet_tiny as _okra_unet_tiny  # noqa: F401
from okrainsight.students import u2net as _u2net  # noqa: F401
from okrainsight.students.registry import (
    DEFAULT_STUDENT,
    create_student,
    get_builder,
    list_students,
    register_student,
)

__all__ = ["DEFAULT_STUDENT", "create_student", "get_builder", "list_students", "register_student"]
