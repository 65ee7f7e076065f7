"""engine.distributed.cluster without starting Ray: addresses, the missing extra, who ends a connection."""

from __future__ import annotations

import sys

import pytest

from storystudio.engine.distributed import cluster
from storystudio.engine.errors import ErrorKind, InputError, error_kind


@pytest.mark.parametrize("address", ["auto", "AUTO", " 10.0.0.5:6379 ", "gpu-box:6379", "ray://gpu-box:10001",
                                     "ray://[::1]:10001"])
def test_addresses_a_cluster_may_have(address):
    assert cluster.check_address(address) == ("auto" if address.lower() == "auto" else address.strip())


@pytest.mark.parametrize("address", ["", "gpu box:6379", "gpu-box", "ray://gpu-box", "gpu-box:0", "gpu-box:70000",
                                     "http://gpu-box:6379", "gpu-box:6379/x"])
def test_addresses_that_cannot_be_one_are_refused_in_words(address):
    with pytest.raises(InputError, match="is not a Ray cluster address; write auto, HOST:PORT"):
        cluster.check_address(address)


def test_without_ray_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(cluster.RayMissing) as err:
        cluster.require_ray()
    assert 'pip install "storystudio[ray]"' in str(err.value) and error_kind(err.value) is ErrorKind.USER_MISTAKE


class FakeRay:
    def __init__(self, initialized: bool):
        self.initialized, self.calls = initialized, []

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.calls.append(("init", kwargs.get("address")))
        self.initialized = True

    def shutdown(self):
        self.calls.append(("shutdown", None))
        self.initialized = False

    def cluster_resources(self):
        return {"CPU": 32.0, "GPU": 2.0}


def test_a_connection_is_ended_by_whoever_made_it(monkeypatch):
    fake = FakeRay(initialized=False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    conn = cluster.connect("gpu-box:6379")
    assert (conn.owned, conn.gpus, conn.cpus) == (True, 2.0, 32.0)
    conn.close()  # leaving a cluster (it runs on): the next connect may go elsewhere
    assert fake.calls == [("init", "gpu-box:6379"), ("shutdown", None)] and not fake.initialized
    held = FakeRay(initialized=True)  # this process already holds a Ray (a test's, a benchmark's)
    monkeypatch.setitem(sys.modules, "ray", held)
    conn = cluster.connect("auto")
    conn.close()
    assert not conn.owned and held.calls == [] and held.initialized
