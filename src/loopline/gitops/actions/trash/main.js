// The work is in post.js, at the end of the job: act runs an action's post step only when
// its main step ran, so this one says what will be moved.
const paths = require("./paths.js");
console.log(`moved out of the workspace when the job ends: ${paths.listed().join(", ") || "nothing"}`);
