"""The scenario switch: loopback only, off by setting, and it changes behaviour at runtime."""

from __future__ import annotations

from tests.service.support import count_statements, make_settings, running_app


async def test_put_switches_a_scenario_at_runtime(database_url: str) -> None:
    async with running_app(make_settings(database_url)) as running:
        client = running.client
        assert (await client.get("/admin/scenarios")).json()["active"] == []
        selects = {}
        for active in ([], ["n_plus_one"], []):
            r = await client.put("/admin/scenarios", json={"active": active})
            assert r.status_code == 200 and r.json()["active"] == active
            with count_statements(running.engine) as log:
                assert (await client.get("/v1/users/4/records", params={"limit": 5})).status_code == 200
            selects[len(selects)] = len(log.selects())
        assert selects == {0: 1, 1: 6, 2: 1}  # eager: one joined SELECT; n_plus_one: 1 + 5
        body = (await client.get("/admin/scenarios")).json()
        assert "pool_starvation" in body["available"]


async def test_remote_clients_get_403(database_url: str) -> None:
    async with running_app(make_settings(database_url), client_addr=("10.1.2.3", 40000)) as running:
        for method in ("GET", "PUT"):
            r = await running.client.request(method, "/admin/scenarios", json={"active": ["cache_off"]})
            assert r.status_code == 403 and "loopback" in r.json()["message"]
        assert running.services.scenarios.active == frozenset()
        # The rest of the API does not care where clients are.
        assert (await running.client.get("/healthz")).status_code == 200


async def test_admin_can_be_switched_off(database_url: str) -> None:
    async with running_app(make_settings(database_url, admin_enabled=False)) as running:
        assert (await running.client.get("/admin/scenarios")).status_code == 404
