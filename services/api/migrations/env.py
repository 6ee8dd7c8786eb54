from carevault_api.models import Base
from carevault_common.migrations import run_env

run_env(Base.metadata, version_table="alembic_version_api")
