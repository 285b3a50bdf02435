from tests.support.forge_server import forge_server  # noqa: F401  (fixtures)
from tests.support.report_project import mlops, project, report_project_template  # noqa: F401
