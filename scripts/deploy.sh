#!/usr/bin/env bash
# The deploy hook of .github/workflows/release.yml: ship the image of the version a stage
# now points at. The operator fills it in by setting the secret DEPLOY_COMMAND, run here
# with IMAGE, BENTO, VERSION and STAGE in its environment, e.g.
#   docker push "registry.example.com/$IMAGE" && kubectl set image deploy/credit-risk api="registry.example.com/$IMAGE"
# Without DEPLOY_COMMAND it only reports what it would deploy.
set -euo pipefail
STAGE=${1:-prod}
VERSION=$(loopline which "$STAGE" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
ARTIFACT=$(python3 -c 'import yaml; print(yaml.safe_load(open("params.yaml"))["artifact"])')
export STAGE VERSION IMAGE="$ARTIFACT:$VERSION" BENTO="$ARTIFACT-service:$VERSION"
if [ -z "${DEPLOY_COMMAND:-}" ]; then
    echo "no deploy hook configured (secret DEPLOY_COMMAND): built $IMAGE for $STAGE, not deployed"
    exit 0
fi
echo "deploying $IMAGE to $STAGE"
bash -euo pipefail -c "$DEPLOY_COMMAND"
