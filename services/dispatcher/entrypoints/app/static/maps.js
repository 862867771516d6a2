// "Navigate": links handing a stop off to the phone's maps app. Which apps are offered is the
// dispatcher's setting APP_MAP_APPS (written into the page): `geo` (a geo: URI, which Android hands to
// its maps app) on phones other than Apple's, `apple` (Apple Maps) on Apple's, and `amap` (Amap,
// 高德地图) and `baidu` (Baidu Maps) on every phone. Coordinates are WGS-84, as the phone's GPS gives
// them; Amap and Baidu are told so (they otherwise expect their own offset coordinates).

export const MAP_APPS = ["geo", "apple", "amap", "baidu"];

// The apps the page names, in its order, known ones only.
export function configuredApps(content) {
  return String(content || "")
    .split(/[\s,]+/)
    .filter((app) => MAP_APPS.includes(app));
}

function href(app, { lat, lon, name }) {
  const label = encodeURIComponent(name || `${lat},${lon}`);
  switch (app) {
    case "geo":
      return `geo:${lat},${lon}?q=${lat},${lon}(${label})`;
    case "apple":
      return `https://maps.apple.com/?daddr=${lat},${lon}&q=${label}`;
    case "amap":
      return `https://uri.amap.com/navigation?to=${lon},${lat},${label}&coordinate=wgs84&callnative=1&src=errands`;
    case "baidu":
      return `https://api.map.baidu.com/marker?location=${lat},${lon}&title=${label}&content=${label}&coord_type=wgs84&output=html&src=errands`;
    default:
      return null;
  }
}

// [{app, href}] for a stop, in the configured order; `geo` and `apple` only where the phone has them.
export function mapLinks(apps, target, { apple }) {
  const lat = Number(target.lat);
  const lon = Number(target.lon);
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return [];
  return apps
    .filter((app) => (app === "geo" ? !apple : app === "apple" ? apple : true))
    .map((app) => ({ app, href: href(app, { lat, lon, name: target.name }) }))
    .filter((link) => link.href);
}
