// A WebSocket LSP client built only from the `ws` and `vscode-jsonrpc`
// packages, to show that a client nobody here wrote can use the server:
// it authenticates with the bearer subprotocol, gets hover and completion
// from gopls, shuts down, and prints one JSON line with what it saw.
//
// Usage: REMOTE_GOPLS_TOKEN=... node lsp-client.mjs WS_URL WORKSPACE ROOT_URI FILE_PATH FILE_URI
// FILE_PATH is a Go file under the local root, which must contain
// `fmt.Println(`; FILE_URI is its URI, encoded the way ROOT_URI is.

import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import rpc from 'vscode-jsonrpc/node';

const [serverUrl, workspace, rootUri, filePath, uri] = process.argv.slice(2);
if (!uri) {
  console.error('usage: node lsp-client.mjs WS_URL WORKSPACE ROOT_URI FILE_PATH FILE_URI');
  process.exit(2);
}
const token = process.env.REMOTE_GOPLS_TOKEN ?? '';

// One text frame carries one JSON-RPC message, without a Content-Length header.
class WebSocketMessageReader extends rpc.AbstractMessageReader {
  constructor(socket) {
    super();
    this.pending = [];
    this.callback = undefined;
    socket.on('message', (data, isBinary) => {
      if (isBinary) {
        this.fireError(new Error('the server sent a binary frame'));
        return;
      }
      const message = JSON.parse(data.toString('utf8'));
      if (this.callback) {
        this.callback(message);
      } else {
        this.pending.push(message);
      }
    });
    socket.on('error', (error) => this.fireError(error));
    socket.on('close', () => this.fireClose());
  }

  listen(callback) {
    this.callback = callback;
    for (const message of this.pending.splice(0)) {
      callback(message);
    }
    return { dispose: () => { this.callback = undefined; } };
  }
}

class WebSocketMessageWriter extends rpc.AbstractMessageWriter {
  constructor(socket) {
    super();
    this.socket = socket;
  }

  write(message) {
    return new Promise((resolve, reject) => {
      this.socket.send(JSON.stringify(message), (error) => (error ? reject(error) : resolve()));
    });
  }

  end() {}
}

// Position (line, UTF-16 column) of `offset` in `text`.
function positionAt(text, offset) {
  const before = text.slice(0, offset);
  const line = before.split('\n').length - 1;
  return { line, character: offset - (before.lastIndexOf('\n') + 1) };
}

const url = `${serverUrl}/v1/workspaces/${encodeURIComponent(workspace)}/lsp?local_root=${encodeURIComponent(rootUri)}`;
const socket = new WebSocket(url, ['remote-gopls.v1', `bearer.${token}`], { maxPayload: 128 * 1024 * 1024 });
let sessionId = '';
socket.on('upgrade', (response) => { sessionId = response.headers['x-remote-gopls-session'] ?? ''; });
const closed = new Promise((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
await new Promise((resolve, reject) => {
  socket.once('open', resolve);
  socket.once('error', reject);
});

const connection = rpc.createMessageConnection(new WebSocketMessageReader(socket), new WebSocketMessageWriter(socket));
connection.onRequest('workspace/configuration', (params) => params.items.map(() => ({})));
connection.onRequest(() => {
  // Other server-to-client requests (progress, registrations) need no data.
  return null;
});
connection.onNotification(() => {});
connection.listen();

const init = await connection.sendRequest('initialize', {
  processId: process.pid,
  clientInfo: { name: 'node-ws-interop', version: '1' },
  rootUri,
  workspaceFolders: [{ uri: rootUri, name: workspace }],
  capabilities: {
    workspace: { configuration: true, workspaceFolders: true },
    textDocument: { hover: { contentFormat: ['markdown', 'plaintext'] }, completion: { completionItem: { snippetSupport: false } } },
  },
});
await connection.sendNotification('initialized', {});

// Hover on the file as it is, then add an unfinished `fmt.` line so
// completion has a target.
const original = readFileSync(filePath, 'utf8');
await connection.sendNotification('textDocument/didOpen', {
  textDocument: { uri, languageId: 'go', version: 1, text: original },
});
const hover = await connection.sendRequest('textDocument/hover', {
  textDocument: { uri },
  position: positionAt(original, original.indexOf('Println(') + 1),
});

const anchor = original.indexOf('\tfmt.Println(');
const text = `${original.slice(0, anchor)}\tfmt.\n${original.slice(anchor)}`;
await connection.sendNotification('textDocument/didChange', {
  textDocument: { uri, version: 2 },
  contentChanges: [{ text }],
});
const completion = await connection.sendRequest('textDocument/completion', {
  textDocument: { uri },
  position: positionAt(text, anchor + '\tfmt.'.length),
});
const items = Array.isArray(completion) ? completion : (completion?.items ?? []);

await connection.sendRequest('shutdown');
await connection.sendNotification('exit');
const close = await closed;
connection.dispose();

console.log(JSON.stringify({
  protocol: socket.protocol,
  sessionId,
  serverName: init.serverInfo?.name ?? '',
  hover: hover?.contents?.value ?? '',
  completionLabels: items.map((item) => item.label),
  close,
}));
