// as_headers: an AssemblyScript filter on @solo-io/proxy-runtime (ABI 0.2.0).
//
// Request headers: adds `x-as-request: 1`; a request carrying `x-as-deny` gets a local
// reply 403 `denied by assemblyscript\n` with `x-as-denied: 1`. Response headers: adds
// `x-as-response: <plugin configuration>` and logs `as_headers: response <status>` at info.

// The runtime's callbacks (proxy_on_*), `malloc` and the ABI marker must be exported by
// the module itself.
export * from "@solo-io/proxy-runtime/proxy";
import {
  Context,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  HeaderPair,
  Headers,
  LogLevelValues,
  RootContext,
  log,
  registerRootContext,
  send_local_response,
  stream_context,
} from "@solo-io/proxy-runtime";
import { BufferTypeValues, get_buffer_bytes } from "@solo-io/proxy-runtime/runtime";

class AsHeadersRoot extends RootContext {
  configuration: string = "";

  // The runtime's own onConfigure (0.1.8) passes the configuration size where the host
  // expects a pointer for the returned size, so it reads nothing and scribbles on low
  // memory; read the plugin configuration through get_buffer_bytes instead.
  onConfigure(configuration_size: u32): bool {
    if (configuration_size == 0) {
      this.configuration = "";
    } else {
      let raw = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
      this.configuration = String.UTF8.decode(raw);
    }
    return true;
  }

  createContext(context_id: u32): Context {
    return new AsHeaders(context_id, this);
  }
}

class AsHeaders extends Context {
  root: AsHeadersRoot;

  constructor(context_id: u32, root: AsHeadersRoot) {
    super(context_id, root);
    this.root = root;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    if (hasHeader(stream_context.headers.request.get_headers(), "x-as-deny")) {
      let extra: Headers = [];
      extra.push(new HeaderPair(String.UTF8.encode("x-as-denied"), String.UTF8.encode("1")));
      send_local_response(
        403,
        "as_headers_denied",
        String.UTF8.encode("denied by assemblyscript\n"),
        extra,
        GrpcStatusValues.InvalidCode,
      );
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-as-request", "1");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-as-response", this.root.configuration);
    let status = stream_context.headers.response.get(":status");
    log(LogLevelValues.info, "as_headers: response " + status);
    return FilterHeadersStatusValues.Continue;
  }
}

// get_header_map_value cannot tell an absent header from an empty one; the pairs can.
function hasHeader(headers: Headers, name: string): bool {
  for (let i = 0; i < headers.length; i++) {
    if (String.UTF8.decode(headers[i].key) == name) {
      return true;
    }
  }
  return false;
}

registerRootContext((context_id: u32): RootContext => new AsHeadersRoot(context_id), "as_headers");
