"""The kit's fixtures for these tests, whether or not the installed trimicro registers the pytest11
entry point yet (an editable install made before it existed does not); conftest fixtures shadow the
plugin's, so loading both is harmless."""

from trimicro.testing.plugin import (  # noqa: F401
    trimicro_broker,
    trimicro_client,
    trimicro_etcd,
    trimicro_nats,
    trimicro_service,
    trimicro_world,
    trimicro_zookeeper,
)
