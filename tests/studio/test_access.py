import pytest

from pipeline.data.store import Store
from studio.access import (
    AUTH_ENV,
    AccessError,
    checker,
    exposure_warning,
    is_loopback,
    logins,
    served_paths,
)


def test_logins_come_from_flags_file_and_environment(tmp_path):
    path = tmp_path / "logins.txt"
    path.write_text("# team\n\nbob:pa:ss\n")
    found = logins(["alice:one"], str(path), {AUTH_ENV: "carol:two, dave:three"})
    assert found == [("alice", "one"), ("bob", "pa:ss"), ("carol", "two"), ("dave", "three")]
    assert logins([], None, {}) == []


@pytest.mark.parametrize("bad", ["alice", "alice:", ":secret", ""])
def test_a_malformed_login_is_refused_by_where_it_came_from(bad):
    with pytest.raises(AccessError, match="--auth: a login is USER:PASS"):
        logins([bad], None, {})


def test_an_auth_file_that_is_missing_or_empty_is_refused(tmp_path):
    with pytest.raises(AccessError, match="Cannot read the auth file"):
        logins([], str(tmp_path / "nope.txt"), {})
    (tmp_path / "empty.txt").write_text("# nobody\n")
    with pytest.raises(AccessError, match="holds no USER:PASS"):
        logins([], str(tmp_path / "empty.txt"), {})
    (tmp_path / "bad.txt").write_text("alice:ok\nbob\n")
    with pytest.raises(AccessError, match="bad.txt, line 2"):
        logins([], str(tmp_path / "bad.txt"), {})


def test_the_checker_accepts_only_a_matching_pair():
    check = checker([("alice", "one"), ("bob", "two")])
    assert check("alice", "one") and check("bob", "two")
    assert not check("alice", "two") and not check("eve", "one") and not check("", "")


def test_loopback_hosts_and_the_warning():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert exposure_warning("127.0.0.1", False) == ""
    assert exposure_warning("0.0.0.0", True) == ""
    assert "NO LOGIN" in exposure_warning("0.0.0.0", False)


def test_only_exports_are_served_and_the_database_and_runs_are_blocked(tmp_path):
    store = Store(tmp_path / "ws")
    allowed, blocked = served_paths(store)
    assert allowed == [str(store.exports)] and store.exports.is_dir()
    assert str(store.path) in blocked and str(store.runs) in blocked
    assert not any(str(store.workspace) == a for a in allowed)


def test_wrong_passwords_double_the_wait_up_to_the_lockout_and_a_success_forgets_them():
    from studio.login_guard import Failures, LoginPolicy, refusal

    now = [1000.0]
    failures = Failures(LoginPolicy(free_tries=3, lockout=60), clock=lambda: now[0])
    waits = []
    for _ in range(9):
        failures.fail("address 10.0.0.1")
        waits.append(failures.wait("address 10.0.0.1"))
    assert waits == [0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert "locked for 60 more seconds" in refusal("10.0.0.1", "x", failures)
    assert refusal("10.0.0.2", "x", failures) == ""  # another address, another user
    now[0] += 59
    assert failures.wait("address 10.0.0.1") == 1
    now[0] += 1
    assert refusal("10.0.0.1", "x", failures) == ""  # the lockout ends by itself
    failures.succeed("address 10.0.0.1")
    failures.fail("address 10.0.0.1")
    assert failures.wait("address 10.0.0.1") == 0


def test_several_logins_are_told_they_share_one_workspace(tmp_path):
    from studio.access import sharing_notice

    store = Store(tmp_path / "ws")
    assert "share ONE workspace" in sharing_notice([("alice", "a"), ("bob", "b")], store)
    assert "share" not in sharing_notice([("alice", "a")], store)
