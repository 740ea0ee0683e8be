#!/usr/bin/env bash
# The deploy hook of .github/workflows/release.yml (an example to adapt):
#
#   scripts/deploy.sh IMAGE VERSION
#
# IMAGE is the reference of the image already built for VERSION and pushed to
# serve.image_registry (e.g. registry.example.com/team/credit-risk:v0.3.0, or
# oci:/srv/images/credit-risk:v0.3.0 for a directory); VERSION is the registry version prod
# now names. release.yml runs the hook named by the repository variable LOOPLINE_DEPLOY_HOOK
# (set it to scripts/deploy.sh to use this one); without it the release says "built, not
# deployed". This example runs the command in the secret DEPLOY_COMMAND with IMAGE and
# VERSION in its environment, e.g.
#   kubectl set image deploy/credit-risk api="$IMAGE"
# and without DEPLOY_COMMAND it only says what it would deploy.
set -euo pipefail
if [ $# -ne 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
    echo "error: usage: $0 IMAGE VERSION (got: $*)" >&2
    exit 2
fi
export IMAGE=$1 VERSION=$2
if [ -z "${DEPLOY_COMMAND:-}" ]; then
    echo "built $IMAGE ($VERSION), not deployed: the secret DEPLOY_COMMAND is empty"
    exit 0
fi
echo "deploying $IMAGE ($VERSION)"
bash -euo pipefail -c "$DEPLOY_COMMAND"
