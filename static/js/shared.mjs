/* A shared conversation's page: its answers' math, typeset as in the chat. Nothing else: the
 * page is read-only and carries no account data. */

import { typesetMath } from "./math.mjs";

const main = document.getElementById("main");
if (main) typesetMath(main, { js: main.dataset.katexJs, css: main.dataset.katexCss });
