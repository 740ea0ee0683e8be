// The workspace paths of the `path` input that post.js may move: relative, no glob, no "..".
const path = require("path");

function listed() {
  return (process.env["INPUT_PATH"] || "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !/^[~/!]/.test(line) && !/[*?[]/.test(line))
    .map((line) => path.normalize(line).replace(/\/+$/, ""))
    .filter((line) => line !== "." && !line.startsWith(".."));
}

module.exports = { listed };
