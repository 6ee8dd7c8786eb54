from carevault_common.migrations import run_env
from carevault_keyservice.models import Base

run_env(Base.metadata, version_table="alembic_version_keyservice")
