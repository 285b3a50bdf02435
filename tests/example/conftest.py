# The example's tests share the one reproduced repository of the session with the template's.
from tests.pipeline.conftest import reproduced, workspace  # noqa: F401
