// Move the listed paths into $LOOPLINE_CI_TRASH by rename (same file system: the run folder
// holds act's workspace), each under a name of its own; a path that cannot be renamed stays
// where it is and act removes it with the workspace, as it would without this step.
const fs = require("fs");
const path = require("path");
const { listed } = require("./paths.js");

const trash = process.env["LOOPLINE_CI_TRASH"];
const workspace = process.env["GITHUB_WORKSPACE"] || process.cwd();
if (!trash) {
  console.log("LOOPLINE_CI_TRASH is not set: nothing moved");
  process.exit(0);
}
fs.mkdirSync(trash, { recursive: true });
listed().forEach((rel, i) => {
  const from = path.join(workspace, rel);
  if (!fs.existsSync(from)) return;
  const to = path.join(trash, `${process.pid}-${i}-${path.basename(rel)}`);
  try {
    fs.renameSync(from, to);
    console.log(`${rel}: moved out of the workspace`);
  } catch (err) {
    console.log(`${rel}: left in place (${err.code || err.message})`);
  }
});
