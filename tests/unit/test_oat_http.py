"""What the oat backend sends and how it treats HTTP answers.

requests-mock is used for this narrow layer only; TLS and real sockets
are covered by tests/integration/test_oat_https.py.
"""

from __future__ import annotations

import json
import logging

import pytest
import requests_mock

from trustpool.attestation import AttestationError
from trustpool.attestation.backends.oat import OATBackend
from trustpool.conf import make_client

from tests.support import leakcheck

URL = "https://oat.example.org:8443/OpenAttestationWebServices/V1.0/PollHosts"
SECRET = "s3cr3t-auth-blob-value"
leakcheck.register(SECRET)


@pytest.fixture
def backend(conf):
    conf.set_override("attestation_server", "oat.example.org",
                      "trusted_computing")
    conf.set_override("attestation_auth_blob", SECRET, "trusted_computing")
    b = OATBackend(conf)
    yield b
    b.close()


def ok(hosts):
    return {"json": {"hosts": hosts}}


def test_request_shape(backend):
    with requests_mock.Mocker() as m:
        m.post(URL, **ok([{"host_name": "n1", "trust_lvl": "trusted"}]))
        backend.attest(["n1", "n2"])
        sent = m.request_history[0]
    assert json.loads(sent.body) == {"count": 2, "hosts": ["n1", "n2"]}
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["x-auth-blob"] == SECRET
    assert sent.timeout == (3.0, 10.0)
    assert sent.verify is True


def test_no_auth_header_without_blob(conf):
    conf.set_override("attestation_server", "oat.example.org",
                      "trusted_computing")
    with requests_mock.Mocker() as m:
        m.post(URL, **ok([]))
        OATBackend(conf).attest(["n1"])
        assert "x-auth-blob" not in m.request_history[0].headers


@pytest.mark.parametrize(("server", "port", "api_url", "scheme", "url"), [
    ("10.0.0.5", 8181, "/AttestationService/resources/", "https",
     "https://10.0.0.5:8181/AttestationService/resources/PollHosts"),
    ("fd00::5", 8443, "OpenAttestationWebServices/V1.0", "https",
     "https://[fd00::5]:8443/OpenAttestationWebServices/V1.0/PollHosts"),
    ("oat", 80, "/mtwilson/v2", "http", "http://oat:80/mtwilson/v2/PollHosts"),
])
def test_url_building(conf, server, port, api_url, scheme, url):
    for name, value in (("attestation_server", server),
                        ("attestation_port", port),
                        ("attestation_api_url", api_url),
                        ("attestation_scheme", scheme)):
        conf.set_override(name, value, "trusted_computing")
    assert OATBackend(conf).url == url


def test_ca_file_and_insecure_switch(conf, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    conf.set_override("attestation_server", "oat.example.org",
                      "trusted_computing")
    conf.set_override("attestation_server_ca_file", str(ca),
                      "trusted_computing")
    with requests_mock.Mocker() as m:
        m.post(URL, **ok([]))
        OATBackend(conf).attest(["n1"])
        conf.set_override("attestation_insecure_ssl", True,
                          "trusted_computing")
        OATBackend(conf).attest(["n1"])
    assert m.request_history[0].verify == str(ca)
    assert m.request_history[1].verify is False


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"status_code": 500, "reason": "Internal Server Error"}, "HTTP 500"),
    ({"status_code": 503}, "HTTP 503"),
    ({"status_code": 401}, "HTTP 401"),
    ({"status_code": 404}, "attestation_api_url"),
    ({"status_code": 302, "headers": {"Location": "https://evil/"}},
     "redirect to 'https://evil/' not followed"),
    ({"text": "<html>login</html>",
      "headers": {"Content-Type": "text/html"}}, "not JSON (text/html)"),
    ({"text": '{"hosts": [{"host_name": "n1", "trus'}, "not JSON"),
    ({"json": {"hosts": "n1"}}, "'hosts' list"),
    ({"content": b"\xff\xfe\x00garbage"}, "not JSON"),
])
def test_bad_answers_raise(backend, kwargs, needle):
    with requests_mock.Mocker() as m:
        m.post(URL, **kwargs)
        with pytest.raises(AttestationError) as err:
            backend.attest(["n1"])
    assert needle in str(err.value)
    assert SECRET not in str(err.value)


def test_announced_size_over_cap_is_refused(conf, backend):
    conf.set_override("max_response_bytes", 2048, "trusted_computing")
    small = OATBackend(conf)
    body = json.dumps({"hosts": [{"host_name": "n1", "trust_lvl": "trusted",
                                  "pad": "x" * 4096}]})
    with requests_mock.Mocker() as m:
        m.post(URL, text=body)
        with pytest.raises(AttestationError) as err:
            small.attest(["n1"])
    assert "max_response_bytes" in str(err.value)


def test_connection_error_is_an_attestation_error(backend):
    import requests
    with requests_mock.Mocker() as m:
        m.post(URL, exc=requests.exceptions.ConnectTimeout("slow"))
        with pytest.raises(AttestationError, match="timed out"):
            backend.attest(["n1"])
        m.post(URL, exc=requests.exceptions.ConnectionError("refused"))
        with pytest.raises(AttestationError, match="cannot reach"):
            backend.attest(["n1"])


def test_secret_never_logged(conf, caplog):
    caplog.set_level(logging.DEBUG)
    conf.set_override("attestation_server", "oat.example.org",
                      "trusted_computing")
    conf.set_override("attestation_auth_blob", SECRET, "trusted_computing")
    client = make_client(conf)
    with requests_mock.Mocker() as m:
        m.post(URL, status_code=403, text=f"denied {SECRET}")
        report = client.level("n1")
    assert report.level == "unknown"
    assert SECRET not in report.reason
    assert caplog.records
    assert SECRET not in caplog.text
