package portal

// stylesheet is the portal's only style (served as /portal.css, so the
// CSP needs no inline style); ACCENT is replaced by escrow.accent_color.
// Readable on a phone, high contrast, visible keyboard focus.
const stylesheet = `*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1a1a1a;background:#f4f4f4}
header{background:#fff;border-top:4px solid ACCENT;padding:12px 16px}
header .logo{max-height:40px}
header .org{font-weight:bold;font-size:18px}
main{max-width:760px;margin:16px auto;background:#fff;padding:16px 20px}
footer{max-width:760px;margin:0 auto 24px;padding:0 20px;color:#444;font-size:14px}
h1{font-size:22px;margin-top:0;overflow-wrap:anywhere}
label{display:block;font-weight:bold;margin-top:12px}
input,textarea{width:100%;font:inherit;padding:10px;border:1px solid #666;border-radius:4px}
button{margin-top:12px;font:inherit;padding:10px 18px;border:0;border-radius:4px;background:ACCENT;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1a1a1a;border:1px solid #666}
a{color:ACCENT}
:focus-visible{outline:3px solid #000;outline-offset:2px}
.error{background:#fdecea;border-left:4px solid #b00020;padding:8px 12px}
.notice{background:#eef4fb;border-left:4px solid ACCENT;padding:8px 12px}
.hint{color:#444;font-size:14px}
dl.headers{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;overflow-wrap:anywhere}
dl.headers dt{font-weight:bold}
dl.headers dd{margin:0}
article.body{border-top:1px solid #ddd;margin-top:12px;padding-top:12px;overflow-wrap:anywhere;overflow-x:auto}
article.body pre{white-space:pre-wrap;font:inherit}
ul.attachments{padding-left:20px}
`
