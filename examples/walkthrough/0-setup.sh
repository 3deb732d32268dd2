# Before you start: a folder of the walk's own (away from the demo's ./consign-data), the
# addresses it uses (away from the demo's port 8080), and the admin's installer home kept apart.
mkdir -p "${CONSIGN_WALK:-$HOME/consign-walk}" && cd "${CONSIGN_WALK:-$HOME/consign-walk}"
export PORTAL_URL=http://127.0.0.1:${PORTAL_PORT:-8090}
export AGENT=127.0.0.1:${AGENT_PORT:-8787}
export CONSIGN_INSTALLER_HOME=$PWD/installer-home
