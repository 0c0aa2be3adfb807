"""OAuth2 tokens kept by the daemon, against a local HTTPS token endpoint
(tests/tokenserver.py) and the scripted POP3 server."""

import harness

if __name__ == "__main__":
    harness.main()
