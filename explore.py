"""A latent-space explorer in the browser: the test galaxies on a latent map, new galaxies of a class,
sliders along the main latent directions, interpolation between two galaxies.

  python explore.py                                   # the newest runs/**/best.pt, http://127.0.0.1:8000/
  python explore.py --checkpoint runs/demo --port 0   # a free port; the URL is printed

The page (explore.html, beside this file) needs nothing from the internet. It talks to a small JSON
API; the client sends numbers only (indices, class ids, latent vectors), never a file name, and nothing
it sends is evaluated:

  GET  /api/info                     latent size, classes and colours, principal directions
  GET  /api/map?projection=pca|tsne  the test galaxies' latent means in 2-D, with their classes
  GET  /api/galaxy?index=I           test galaxy I: its latent mean, the image and its reconstruction
  POST /api/decode      {"latent": [d numbers]}                  -> {"image": PNG data URL}
  POST /api/sample      {"class": K, "n": N, "seed": S}          -> N galaxies from class K's sampler
  POST /api/interpolate {"a": [...], "b": [...], "steps": N}     -> N galaxies from a to b

Bad requests get a 4xx and a one-line JSON {"error": ...}, and the server keeps serving.
"""
import argparse
import base64
import io
import ipaddress
import json
import math
import socket
import threading
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch
from PIL import Image

from checkpoint import checkpoint_file, find_latest_checkpoint, load_checkpoint
from classes import CLASS_NAMES
from cli import InputError, Parser, check_at_least, exit_on_input_error
from data import checkpoint_galaxies
from devices import forked_rng, pick_device
from draw_choice import draw_with_sky_noise, parse_refine_steps, parse_sky_noise, refine_choice, sky_choice
from images import to_uint8
from latent_map import CLASS_COLOURS, PROJECTIONS, principal_directions, project
from model import decode_latents, encode_means, encode_posteriors, interpolate_latents, refine_latents
from samplers import DEFAULT_COMPONENTS, DEFAULT_SAMPLER, check_kind, fit_training_sampler

PAGE = Path(__file__).resolve().parent / "explore.html"
MAX_BODY = 1 << 20        # bytes; every legal request is a few kB (a latent vector or two)
LATENT_LIMIT = 100.0      # |z_i| beyond this is tens of standard deviations from any encoded galaxy
MAX_SAMPLES, MAX_STEPS = 16, 32


class BadRequest(Exception):
    def __init__(self, message, status=HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


def png_data_url(image):
    """A 3 x H x W image in [0, 1] as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", compress_level=1)  # speed over size: ~10 kB anyway
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------- the model side

class Explorer:
    """Everything the page asks of a model, in plain JSON-ready values. The sampler, directions and the PCA
    map are computed once here; the t-SNE map on first request."""

    def __init__(self, model, galaxies, directions=10, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS, seed=0,
                 name="", refine_steps=0):
        self.model, self.galaxies, self.name, self.seed, self.refine_steps = model, galaxies, name, seed, refine_steps
        self.classes = [int(k) for k in galaxies.classes]
        # One decode at a time: the CPU's cores are better spent inside one convolution than split
        # between racing requests, and it keeps the model's use simple to reason about.
        self.lock, self.map_lock = threading.Lock(), threading.Lock()
        posteriors = encode_posteriors(model, galaxies.train_x)
        train_mu, self.test_mu = posteriors[0], encode_means(model, galaxies.test_x)
        self.mean, self.directions, self.spread = principal_directions(train_mu.numpy(), directions)
        self.explained = (self.spread ** 2 / train_mu.numpy().var(0, ddof=1).sum()).tolist()
        self.sampler = fit_training_sampler(sampler, model, galaxies, seed, components,  # as generate.py --class
                                            posteriors=posteriors)
        self.maps = {"pca": (self.test_mu.numpy() - self.mean) @ self.directions[:2].T}

    @property
    def latent_dim(self):
        return self.model.latent_dim

    @contextmanager
    def drawing(self):
        # A --decoder-noise model draws noise: the same draw for every request, so that a slider moves
        # the galaxy, not its field stars, and one latent always shows one image.
        device = next(self.model.parameters()).device
        with self.lock, torch.inference_mode(), forked_rng(device, self.seed):
            yield

    def decode(self, z):
        with self.drawing():
            return decode_latents(self.model, z)

    def refine(self, z):
        """z after --refine-steps decode-encode round trips, as generate.py --class."""
        with self.drawing():
            return refine_latents(self.model, z, self.refine_steps)

    def info(self):
        return {"name": self.name, "latent_dim": self.latent_dim, "data": self.galaxies.source,
                "classes": [{"id": k, "name": CLASS_NAMES[k], "colour": CLASS_COLOURS[i % 10]}
                            for i, k in enumerate(self.classes)],
                "mean": self.mean.tolist(), "directions": self.directions.tolist(), "spread": self.spread.tolist(),
                "explained": self.explained, "n_test": len(self.test_mu), "limit": LATENT_LIMIT}

    def latent_map(self, projection):
        if projection not in PROJECTIONS:
            raise BadRequest(f"projection {projection!r}: choose {' or '.join(PROJECTIONS)}")
        with self.map_lock:  # t-SNE takes seconds: compute it once, not once per impatient click
            if projection not in self.maps:
                self.maps[projection] = project(self.test_mu.numpy(), projection, seed=self.seed)
        coords = self.maps[projection]
        return {"projection": projection, "x": coords[:, 0].tolist(), "y": coords[:, 1].tolist(),
                "class": self.galaxies.test_y.tolist()}

    def galaxy(self, index):
        z = self.test_mu[index:index + 1]
        k = int(self.galaxies.test_y[index])
        return {"index": index, "class": k, "name": CLASS_NAMES[k], "latent": z[0].tolist(),
                "original": png_data_url(self.galaxies.test_x[index]), "reconstruction": png_data_url(self.decode(z)[0])}

    def decode_one(self, z):
        return {"image": png_data_url(self.decode(z.unsqueeze(0))[0])}

    def sample(self, k, n, seed):
        z = self.refine(self.sampler.sample(n, seed, label=k))
        return {"class": k, "seed": seed, "galaxies": [{"latent": zi.tolist(), "image": png_data_url(x)}
                                                      for zi, x in zip(z, self.decode(z))]}

    def interpolate(self, a, b, steps):
        z = interpolate_latents(a, b, steps)
        return {"galaxies": [{"t": i / (steps - 1), "latent": zi.tolist(), "image": png_data_url(x)}
                             for i, (zi, x) in enumerate(zip(z, self.decode(z)))]}


# ---------------------------------------------------------------- checking what the client sends

def whole_number(value, name, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name}: must be a whole number from {low} to {high}, got {json.dumps(value)[:40]}")
    return value


def latent_vector(value, d, name="latent"):
    if not isinstance(value, list) or len(value) != d:
        got = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise BadRequest(f"{name}: must be a list of {d} numbers (the latent size), got {got}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
        raise BadRequest(f"{name}: must hold numbers only")
    if not all(math.isfinite(v) and abs(v) <= LATENT_LIMIT for v in value):
        raise BadRequest(f"{name}: every value must be finite and within +-{LATENT_LIMIT:g}")
    return torch.tensor(value, dtype=torch.float32)


def reject_constant(name):
    raise BadRequest(f"malformed JSON: {name} is not a number")  # Python's json would accept NaN, Infinity


def json_object(body):
    try:
        value = json.loads(body, parse_constant=reject_constant)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"malformed JSON: {str(e).splitlines()[0][:100]}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


# ---------------------------------------------------------------- HTTP

def is_loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a slider sends a stream of small requests
    timeout = 30                   # seconds a silent client may hold a thread
    server_version = "galaxy-vae-explore"

    def log_request(self, code="-", size="-"):
        pass  # a slider makes hundreds of requests; errors are still logged

    def send_json(self, value, status=HTTPStatus.OK):
        self.send_body(json.dumps(value, separators=(",", ":")).encode(), "application/json", status)

    def send_body(self, body, content_type, status=HTTPStatus.OK):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            # Nothing from elsewhere may load, and no other site may frame the page.
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                             "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """Every error, ours or http.server's (bad request line, unknown method), as one line of JSON."""
        try:
            text = message or HTTPStatus(code).phrase
        except ValueError:
            text = message or "error"
        self.log_error("%d %s", code, text)
        self.close_connection = True  # the unread rest of a bad request must not be taken for the next one
        self.send_response(code, text)
        body = (json.dumps({"error": text}) + "\n").encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if code == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", getattr(self, "allow", "GET"))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(body)

    def check_host(self):
        """Served on loopback, answer only requests addressed to loopback: a web page elsewhere cannot
        reach the server through DNS rebinding."""
        if not is_loopback(self.server.server_address[0]):
            return
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        if not is_loopback(host):
            raise BadRequest(f"Host {host!r}: this server answers only requests to itself", HTTPStatus.FORBIDDEN)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("chunked bodies are not accepted: send Content-Length", HTTPStatus.LENGTH_REQUIRED)
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest("Content-Length required", HTTPStatus.LENGTH_REQUIRED)
        if not length.isdigit():
            raise BadRequest("Content-Length: not a number")
        if int(length) > MAX_BODY:
            if int(length) <= 4 * MAX_BODY:
                self.rfile.read(int(length))  # so that a client still sending its body reads the answer
            raise BadRequest(f"body of {int(length)} bytes: at most {MAX_BODY} accepted",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        if self.headers.get_content_type() != "application/json":
            raise BadRequest("Content-Type must be application/json", HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        return self.rfile.read(int(length))

    def handle_request(self, routes):
        try:
            self.check_host()
            url = urlsplit(self.path)
            if url.path not in ROUTES:
                raise BadRequest(f"{url.path[:100]}: no such page", HTTPStatus.NOT_FOUND)
            if url.path not in routes:
                self.allow = "GET, HEAD" if url.path in GET_ROUTES else "POST"
                raise BadRequest(f"{self.command} {url.path}: use {self.allow}", HTTPStatus.METHOD_NOT_ALLOWED)
            routes[url.path](self, url)
        except BadRequest as e:
            self.send_error(e.status, str(e))
        except Exception as e:  # a bug answers 500 and the server goes on serving
            self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(e).__name__}")
            raise

    def do_GET(self):
        self.handle_request(GET_ROUTES)

    def do_HEAD(self):
        self.handle_request(GET_ROUTES)

    def do_POST(self):
        self.handle_request(POST_ROUTES)

    # ---- routes

    def page(self, url):
        self.send_body(self.server.page, "text/html; charset=utf-8")

    def info(self, url):
        self.send_json(self.server.explorer.info())

    def query(self, url, name, default=None):
        values = parse_qs(url.query, keep_blank_values=True).get(name, [default])
        if values[0] is None:
            raise BadRequest(f"?{name}= is missing")
        return values[-1]

    def latent_map(self, url):
        self.send_json(self.server.explorer.latent_map(self.query(url, "projection", "pca")))

    def galaxy(self, url):
        explorer, text = self.server.explorer, self.query(url, "index")
        n = len(explorer.test_mu)
        if not (text.isascii() and text.isdigit() and int(text) < n):
            raise BadRequest(f"index {text[:20]!r}: must be a test galaxy, 0 to {n - 1}")
        self.send_json(explorer.galaxy(int(text)))

    def decode(self, url):
        explorer = self.server.explorer
        request = json_object(self.read_body())
        self.send_json(explorer.decode_one(latent_vector(request.get("latent"), explorer.latent_dim)))

    def sample(self, url):
        explorer = self.server.explorer
        request = json_object(self.read_body())
        k = whole_number(request.get("class"), "class", 0, 9)
        if k not in explorer.classes:
            raise BadRequest(f"class {k}: not in this checkpoint's data, choose one of {explorer.classes}")
        n = whole_number(request.get("n", 6), "n", 1, MAX_SAMPLES)
        self.send_json(explorer.sample(k, n, whole_number(request.get("seed", 0), "seed", 0, 2 ** 31 - 1)))

    def interpolate(self, url):
        explorer = self.server.explorer
        request = json_object(self.read_body())
        a, b = (latent_vector(request.get(end), explorer.latent_dim, end) for end in ("a", "b"))
        self.send_json(explorer.interpolate(a, b, whole_number(request.get("steps", 8), "steps", 2, MAX_STEPS)))


GET_ROUTES = {"/": Handler.page, "/api/info": Handler.info, "/api/map": Handler.latent_map,
              "/api/galaxy": Handler.galaxy}
POST_ROUTES = {"/api/decode": Handler.decode, "/api/sample": Handler.sample, "/api/interpolate": Handler.interpolate}
ROUTES = GET_ROUTES | POST_ROUTES


class Server(ThreadingHTTPServer):
    daemon_threads = True  # an open keep-alive connection must not keep the process from exiting


def make_server(explorer, host="127.0.0.1", port=8000):
    """The explorer's HTTP server, bound (port 0: a free one) but not yet serving."""
    address_family = Server.address_family
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            address_family = socket.AF_INET6
    except ValueError:
        pass  # a name such as localhost
    server_class = type("Server", (Server,), {"address_family": address_family})
    try:
        server = server_class((host, port), Handler)
    except OSError as e:
        raise InputError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None
    server.explorer, server.page = explorer, PAGE.read_bytes()
    return server


def server_url(server):
    host, port = server.server_address[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


# ---------------------------------------------------------------- command line

def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest runs/**/best.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free one)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--directions", type=int, default=10, help="sliders: principal directions of the training latents")
    p.add_argument("--sampler", default=DEFAULT_SAMPLER, help="class sampler fitted to the training latents, as "
                   "generate.py --class: gmm, vae2 or flow")
    p.add_argument("--prior", dest="sampler", help=argparse.SUPPRESS)  # the flag's name before
    p.add_argument("--components", type=int, default=DEFAULT_COMPONENTS, help="most mixture components")
    p.add_argument("--refine-steps", default="auto", metavar="K|auto", help="decode-encode round trips of the "
                   "sampled latents, as generate.py (default auto: the checkpoint's recorded choice, else 0)")
    p.add_argument("--sky-noise", default="auto", metavar="F|auto", help="fraction of the training sky's noise "
                   "every galaxy is drawn with, as generate.py (default auto: the checkpoint's recorded choice, "
                   "else its own)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler fit and the t-SNE map")
    return p.parse_args(argv)


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: must be 0 to 65535")
    check_at_least({"--directions": (args.directions, 1), "--components": (args.components, 1)})
    args.refine_steps, args.sky_noise = parse_refine_steps(args.refine_steps), parse_sky_noise(args.sky_noise)
    check_kind(args.sampler)
    if args.sampler == "normal":
        raise InputError("--sampler normal: N(0, I) knows no classes; choose gmm, vae2 or flow")
    path = checkpoint_file(args.checkpoint) if args.checkpoint else find_latest_checkpoint()
    device = pick_device(args.device)
    model, checkpoint = load_checkpoint(path, device, drawn_by="explore.py")
    galaxies = checkpoint_galaxies(checkpoint, progress=False)
    sky, _ = sky_choice(args.sky_noise, path, args.sampler, args.components)
    sky = draw_with_sky_noise(model, sky, galaxies)
    refine_steps, _ = refine_choice(args.refine_steps, path, args.sampler, args.components, sky_noise=sky)
    name = f"{path.parent.name}/{path.name}"
    explorer = Explorer(model, galaxies, args.directions, args.sampler, args.components, args.seed, name, refine_steps)
    server = make_server(explorer, args.host, args.port)
    # One decode is ~2 ms of work on one core; splitting it over a second thread costs more in
    # hand-offs than it saves, and on a busy machine each hand-off waits for a core (300 ms measured
    # with 2 threads on a loaded 2-core machine, 1.7 ms with 1). Requests overlap in their own threads.
    torch.set_num_threads(1)
    print(f"serving the galaxy explorer of {name} at {server_url(server)}  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
