// The API docs page: lists /api/openapi.json's operations (served as its own file so the
// page's Content-Security-Policy needs no inline script).
fetch('/api/openapi.json').then(r => r.json()).then(doc => {
  const out = document.getElementById('ops'); out.textContent = '';
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const d = document.createElement('div'); d.className = 'op';
      const h = document.createElement('div');
      const m = document.createElement('span'); m.className = 'm ' + method; m.textContent = method;
      const p = document.createElement('code'); p.textContent = path;
      h.append(m, p); d.append(h);
      const s = document.createElement('p'); s.textContent = (op.summary || '') + (op.description ? ' ' + op.description : '');
      d.append(s);
      const codes = document.createElement('p'); codes.textContent = 'Responses: ' + Object.keys(op.responses || {}).join(', ');
      d.append(codes); out.append(d);
    }
  }
});
